// The original's ncnn demo (upstream/clients/ncnn/src/main.cpp) includes <opencv2/opencv.hpp> for
// cv::imread, cv::rectangle, cv::imshow, cv::waitKey and cv::imwrite. tests/clients/test_ncnn_demo.py
// compiles it unchanged against ncnn's SimpleOCV instead (the same calls, in libncnn; no OpenCV C++
// library or display needed): this folder comes first on the include path.
#include "simpleocv.h"
