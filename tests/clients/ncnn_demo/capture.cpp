// Linked in front of the original's ncnn demo by tests/clients/test_ncnn_demo.py, with
// -Wl,--wrap=<cv::rectangle's symbol>: the demo's calls to cv::rectangle(Mat&, Point, Point, const Scalar&,
// int) come here, are printed ("drawn x1 y1 x2 y2", after main.cpp's own "Processing FILE" lines) and
// are then drawn as before. Nothing of the demo is copied or changed.
#include <iostream>

#include "simpleocv.h"

#define ZOO_RECTANGLE "_ZN2cv9rectangleERNS_3MatENS_6Point_IiEES3_RKNS_7Scalar_IhEEi"

void zoo_real_rectangle(cv::Mat&, cv::Point, cv::Point, const cv::Scalar&, int) __asm__("__real_" ZOO_RECTANGLE);
void zoo_wrap_rectangle(cv::Mat&, cv::Point, cv::Point, const cv::Scalar&, int) __asm__("__wrap_" ZOO_RECTANGLE);

void zoo_wrap_rectangle(cv::Mat& img, cv::Point pt1, cv::Point pt2, const cv::Scalar& color, int thickness)
{
    std::cout << "drawn " << pt1.x << " " << pt1.y << " " << pt2.x << " " << pt2.y << std::endl;
    zoo_real_rectangle(img, pt1, pt2, color, thickness);
}
